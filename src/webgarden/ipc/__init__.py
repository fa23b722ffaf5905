"""The listener <-> worker protocol: frame codec and message types. No sockets in here."""
