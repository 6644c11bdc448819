"""HTTP routes, one module per resource; views are thin: validate, call the repo or service, shape the answer."""
