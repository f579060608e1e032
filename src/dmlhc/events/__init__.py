"""Events: the benchmarks, their line shapes, the embedded Pythia 8 generator, the jet response,
Delphes ROOT I/O, the sample cache and kinematic plots."""
