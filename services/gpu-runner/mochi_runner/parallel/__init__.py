"""Both GPUs on every job: one transformer replica per device, driven by one
process (a persistent worker thread per device), exchanging only the noise
predictions of each step; and the VAE decode split by tiles over the devices."""
