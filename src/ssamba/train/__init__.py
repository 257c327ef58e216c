"""ssamba.train"""
