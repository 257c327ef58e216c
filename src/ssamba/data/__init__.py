"""ssamba.data"""
