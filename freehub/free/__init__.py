"""free"""
