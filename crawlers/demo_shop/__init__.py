"""The synthetic demo shop: rendered shirt and jeans photos with known labels and Labelme
regions, a static shop site with real shops' faults, and a loopback server. Only this package
and the tests and benchmarks read its ground truth; the pipeline crawls it like any shop."""
