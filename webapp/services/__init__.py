"""Services: the product's behaviour, called by routes and jobs alike. No Flask here."""
