"""Scrapy project: generic spiders driven by one YAML file per shop, and the item pipelines that
store content-addressed images and append to the manifest."""
