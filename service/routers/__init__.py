"""One router module per resource: search, products and images, import, duplicates, operations, pages.

A resource's ``read`` router holds what a read key may do and its ``write`` router what needs a write
key; ``service.app.create_app`` includes each with the matching key check."""
