"""Provider adapters behind one port (port.py): the Partner Center REST client talks to the
real API or to the local sandbox, which speaks the same REST shape."""
