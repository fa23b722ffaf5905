"""The manager (IIS: WAS/W3SVC): application pools, worker processes, health, events."""
