"""Behaviour triggers: cart and browse abandonment, propensity crossings, back in stock (issue 15)."""
