"""webgarden: IIS 6.0's architecture for Python web applications on Linux."""

__version__ = "0.1.0"
SERVER_NAME = f"webgarden/{__version__}"
