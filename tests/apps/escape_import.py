"""An application whose import fails with terminal escape sequences in its message (a
compromised or careless app): the operator's terminal must show them as plain text."""

raise RuntimeError("\x1b[2J\x1b[Hall is well\x07")
