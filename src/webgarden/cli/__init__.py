"""The command line: run, serve, config check, and the appcmd-style admin verbs."""
