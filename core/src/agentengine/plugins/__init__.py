"""The plugin system: hook specifications, entry-point loading, and the extension stack.

Above the definitions (plugins register agents, tools and resources); below the runtime.
"""
