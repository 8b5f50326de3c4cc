"""The runtime: the engine and its runs, the factory that makes engines, limits and deadlines.

Built on the definitions, the plugin system and the event sinks; the request scope, legacy
names, the test kit and the command line sit on top of it.
"""
