"""placeholder"""
def restore_soft(model, gradients, batch_size, **options):
    raise NotImplementedError
