"""Built-in plugins (import name ``harness.plugins``), one module per component family.

Each module implements hooks from ``harness.hookspecs`` and is registered by
``harness.plugin_manager`` through the same ``pm.register`` call as an entry-point plugin.
Targets are ``"module:attr"`` strings, so nothing heavy is imported to build the registries.
"""
