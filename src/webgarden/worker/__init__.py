"""Worker processes (IIS: w3wp.exe): host a pool's WSGI applications."""
