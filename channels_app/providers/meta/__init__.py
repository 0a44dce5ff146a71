"""meta provider: webhook parsing and transport."""
