"""A/B experiments on a placement: definitions, assignment, exposures and results (issue 14)."""
