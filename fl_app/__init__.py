"""swipe-fl core: keyboards, synthetic swipes, features, model, decoding, training, stores."""
