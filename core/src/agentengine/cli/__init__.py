"""The ``agentengine`` command line (``main``), its demo and the plugin scaffold.

The top layer: nothing else in the package imports it.
"""
