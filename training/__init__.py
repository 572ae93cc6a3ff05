"""training: RA-UNet mask removal on maskgen shards (not yet built)."""
