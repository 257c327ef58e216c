"""ssamba.bench"""
