"""whapi provider: webhook parsing and transport."""
