"""Built-in connector plugins, one module each, registered like third-party plugins."""
