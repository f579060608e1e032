"""Networks (architectures) and the LightningModules that train them."""
