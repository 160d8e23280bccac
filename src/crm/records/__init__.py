"""Shared behaviour of CRM records (contacts, companies, deals, tasks, projects): versioned
updates with activities, soft delete and restore, reference checks."""
