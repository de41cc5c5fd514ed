"""posttrain stage."""
