"""Kaspi.kz Shop provider plugin for the CRM (orders → sales documents, customers → contacts)."""
