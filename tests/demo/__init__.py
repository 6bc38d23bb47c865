"""The demo's quality checks (make test-demo): a package, so its conftest is not the main suite's `conftest`."""
