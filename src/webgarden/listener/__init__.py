"""The listener (IIS: HTTP.sys): ports, parsing, routing, pool queues. No application code."""
