"""Corporate portal provider: the portal's user directory as organization members."""
