"""Configuration: frozen typed objects (model), and later the XML loader and validation."""
