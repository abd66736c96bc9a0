"""Retraining a genotype from scratch: the LightningModule that trains the derived network."""
