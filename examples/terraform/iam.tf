# ---- account 111122223333 (registry) ----

resource "aws_iam_role" "ecr_access_from_b" {
  name               = "ecr-access-from-b"
  assume_role_policy = jsonencode({
    "Version": "2012-10-17",
    "Statement": [
      {
        "Sid": "TrustInstanceAccount",
        "Effect": "Allow",
        "Principal": {
          "AWS": [
            "arn:aws:iam::444455556666:role/ecr-credd-node"
          ]
        },
        "Action": [
          "sts:AssumeRole"
        ],
        "Condition": {
          "StringEquals": {
            "sts:ExternalId": "fleet-1"
          }
        }
      }
    ]
  })
}

resource "aws_iam_role_policy" "ecr_access_from_b" {
  name   = "ecr-access"
  role   = aws_iam_role.ecr_access_from_b.id
  policy = jsonencode({
    "Version": "2012-10-17",
    "Statement": [
      {
        "Sid": "GetAuthorizationToken",
        "Effect": "Allow",
        "Action": [
          "ecr:GetAuthorizationToken"
        ],
        "Resource": [
          "*"
        ]
      },
      {
        "Sid": "Pull",
        "Effect": "Allow",
        "Action": [
          "ecr:BatchCheckLayerAvailability",
          "ecr:BatchGetImage",
          "ecr:GetDownloadUrlForLayer",
          "ecr:ListImages"
        ],
        "Resource": [
          "arn:aws:ecr:*:111122223333:repository/app"
        ]
      }
    ]
  })
}

resource "aws_ecr_repository_policy" "app" {
  repository = "app"
  policy     = jsonencode({
    "Version": "2012-10-17",
    "Statement": [
      {
        "Sid": "Pull",
        "Effect": "Allow",
        "Principal": {
          "AWS": [
            "arn:aws:iam::111122223333:role/ecr-access-from-b",
            "arn:aws:iam::444455556666:role/ecr-credd-node"
          ]
        },
        "Action": [
          "ecr:BatchCheckLayerAvailability",
          "ecr:BatchGetImage",
          "ecr:GetDownloadUrlForLayer",
          "ecr:ListImages"
        ]
      }
    ]
  })
}

# ---- account 444455556666 (instances) ----

resource "aws_iam_role_policy" "assume_ecr_access_from_b" {
  name   = "assume-ecr-access-from-b"
  role   = "ecr-credd-node"
  policy = jsonencode({
    "Version": "2012-10-17",
    "Statement": [
      {
        "Sid": "AssumeEcrRole",
        "Effect": "Allow",
        "Action": [
          "sts:AssumeRole"
        ],
        "Resource": [
          "arn:aws:iam::111122223333:role/ecr-access-from-b"
        ]
      }
    ]
  })
}

# Only when you create the instance role: its trust policy.
output "instance_role_trust_policy" {
  value = jsonencode({
    "Version": "2012-10-17",
    "Statement": [
      {
        "Sid": "TrustEc2",
        "Effect": "Allow",
        "Principal": {
          "Service": [
            "ec2.amazonaws.com"
          ]
        },
        "Action": [
          "sts:AssumeRole"
        ]
      }
    ]
  })
}
