"""Data: event pools, histogram ensembles drawn from them, and the LightningDataModule that owns both."""
