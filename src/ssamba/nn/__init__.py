"""ssamba.nn"""
