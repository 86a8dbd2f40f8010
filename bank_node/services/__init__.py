"""Services: the use cases, composed of the pure core and the storage port."""
