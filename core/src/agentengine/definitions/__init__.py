"""What a plugin declares: agents, tools and scoped resources, with their registries.

Above the leaves (errors, context, events, config); below the plugin system and the runtime.
"""
