"""Webhooks: endpoints that receive signed JSON deliveries from a Postgres outbox (issue 15)."""
