"""Pushing metered usage to a billing provider (Stripe Billing) exactly once; see services.py."""
