"""Campaign exports: an audience, one row per shopper with their own top items (issue 15, part 4)."""
