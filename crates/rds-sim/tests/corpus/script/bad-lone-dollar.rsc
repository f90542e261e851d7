:put $ 
