"""Event sinks: the ``EventSink`` protocol (``protocol``) and the in-memory sink (``memory``).

Sinks know events and nothing of the runtime, so any transport (the Redis plugin, say) builds
on this layer alone.
"""
