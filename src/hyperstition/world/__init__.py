"""world stage."""
