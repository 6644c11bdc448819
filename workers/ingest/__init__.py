"""Dataset ingestion: an uploaded archive or a server-side folder → a validated, labelled image collection.

Plain Python + Pillow, safe against hostile input: `archive.extract` unpacks within limits, `layout.scan` finds
the images and their labels, `validate.validate` decodes every image and reports what it kept and why it left
files out, `folder.check_import_root` admits only folders under the configured import roots.
"""
