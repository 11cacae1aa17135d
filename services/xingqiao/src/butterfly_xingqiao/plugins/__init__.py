"""Built-in flow types, loaded like any plugin folder (see ``flowtypes.load_plugins``)."""
