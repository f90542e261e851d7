:put x \ y
