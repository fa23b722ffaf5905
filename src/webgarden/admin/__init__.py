"""Administration (IIS: appcmd and IIS Manager): the control socket and its verbs."""
