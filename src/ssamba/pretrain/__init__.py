"""ssamba.pretrain"""
