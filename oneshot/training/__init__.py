"""What search and retraining share in Lightning: the data modules over ``tasks`` datasets."""
