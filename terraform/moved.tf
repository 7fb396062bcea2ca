# The single queue's resources became counted (local.single_queue) when appliers were added
# (fanout.tf). Without appliers they are the same objects under their new addresses: these
# blocks make that a move in the plan, not a replacement that would delete the queues and any
# event in them. (The alarms and the applier's inline policies were counted already.)

moved {
  from = aws_sqs_queue.events
  to   = aws_sqs_queue.events[0]
}

moved {
  from = aws_sqs_queue.dlq
  to   = aws_sqs_queue.dlq[0]
}

moved {
  from = aws_sqs_queue_redrive_allow_policy.dlq
  to   = aws_sqs_queue_redrive_allow_policy.dlq[0]
}

moved {
  from = aws_sqs_queue_policy.events
  to   = aws_sqs_queue_policy.events[0]
}

moved {
  from = aws_sqs_queue_policy.dlq
  to   = aws_sqs_queue_policy.dlq[0]
}
