"""Message catalogs (gettext `.po`, read with Babel) and the check that every message has a translation."""
